;; Increments a global and outputs it: a fresh instance always outputs 1.
(module
  (import "edgestate" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (func (export "handle") (result i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store (i32.const 0) (global.get $calls))
    (drop (call $output_write (i32.const 0) (i32.const 4)))
    i32.const 0))
