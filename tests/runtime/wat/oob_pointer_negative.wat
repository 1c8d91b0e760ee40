;; A "negative" pointer: 0xFFFFFFF0 as u32, far outside memory.
(module
  (import "edgestate" "kv_get" (func $kv_get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (drop (call $kv_get (i32.const 0) (i32.const -16) (i32.const 4) (i32.const 0) (i32.const 8)))
    i32.const 0))
