;; Unbounded recursion.
(module
  (memory (export "memory") 1)
  (func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))
  (func (export "handle") (result i32) (call $down (i32.const 0))))
