;; Logs 64 lines of 1 KiB (the per-invocation maximum), outputs one byte, succeeds.
(module
  (import "edgestate" "log" (func $log (param i32 i32 i32)))
  (import "edgestate" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32) (local $i i32)
    (loop $more
      (call $log (i32.const 2) (i32.const 0) (i32.const 1024))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 64))))
    (drop (call $output_write (i32.const 0) (i32.const 1)))
    i32.const 0))
