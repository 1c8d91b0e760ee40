;; Imports a real host function with the wrong signature.
(module
  (import "edgestate" "now_ms" (func $now (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32) (call $now)))
