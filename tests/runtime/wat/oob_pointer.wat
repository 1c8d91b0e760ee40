;; Hands the host a range that ends past its one page of memory.
(module
  (import "edgestate" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (drop (call $output_write (i32.const 65530) (i32.const 100)))
    i32.const 0))
