;; Fails politely with status 3 after writing some output.
(module
  (import "edgestate" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "partial")
  (func (export "handle") (result i32)
    (drop (call $output_write (i32.const 0) (i32.const 7)))
    i32.const 3))
