;; Writes two keys and a counter of document "app", then traps: none of it may
;; become visible.
(module
  (import "edgestate" "doc_open" (func $doc_open (param i32 i32) (result i32)))
  (import "edgestate" "kv_set" (func $kv_set (param i32 i32 i32 i32 i32) (result i32)))
  (import "edgestate" "kv_incr" (func $kv_incr (param i32 i32 i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "app")
  (data (i32.const 16) "k1")
  (data (i32.const 32) "k2")
  (data (i32.const 48) "hits")
  (data (i32.const 64) "value")
  (func (export "handle") (result i32) (local $doc i32)
    (local.set $doc (call $doc_open (i32.const 0) (i32.const 3)))
    (drop (call $kv_set (local.get $doc) (i32.const 16) (i32.const 2) (i32.const 64) (i32.const 5)))
    (drop (call $kv_set (local.get $doc) (i32.const 32) (i32.const 2) (i32.const 64) (i32.const 5)))
    (drop (call $kv_incr (local.get $doc) (i32.const 48) (i32.const 4) (i64.const 1) (i32.const 128)))
    unreachable))
