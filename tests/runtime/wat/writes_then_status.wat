;; Writes a key of document "app", then returns status 1: nothing may commit.
(module
  (import "edgestate" "doc_open" (func $doc_open (param i32 i32) (result i32)))
  (import "edgestate" "kv_set" (func $kv_set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "app")
  (data (i32.const 16) "k1")
  (func (export "handle") (result i32)
    (drop (call $kv_set (call $doc_open (i32.const 0) (i32.const 3))
                        (i32.const 16) (i32.const 2) (i32.const 16) (i32.const 2)))
    i32.const 1))
