;; Writes 1000 bytes of output, 10 at a time.
(module
  (import "edgestate" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32) (local $i i32)
    (loop $more
      (drop (call $output_write (i32.const 0) (i32.const 10)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 100))))
    i32.const 0))
