;; Loops on kv_get of key "big" in document "bench" (a value of up to 1 MiB,
;; copied into memory at 64 KiB) until its wall-time budget ends it: nearly all
;; of its time is spent inside host calls, where epoch interruption never fires.
(module
  (import "edgestate" "doc_open" (func $doc_open (param i32 i32) (result i32)))
  (import "edgestate" "kv_get" (func $kv_get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 18)
  (data (i32.const 0) "bench")
  (data (i32.const 16) "big")
  (func (export "handle") (result i32) (local $doc i32)
    (local.set $doc (call $doc_open (i32.const 0) (i32.const 5)))
    (loop $forever
      (drop (call $kv_get (local.get $doc) (i32.const 16) (i32.const 3) (i32.const 65536) (i32.const 1048576)))
      (br $forever))
    i32.const 0))
