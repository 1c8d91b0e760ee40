;; Benchmark: kv_get of key "k" in document "bench", N times (N = input as LE i32).
(module
  (import "edgestate" "doc_open" (func $doc_open (param i32 i32) (result i32)))
  (import "edgestate" "kv_get" (func $kv_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "edgestate" "input_read" (func $input_read (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "bench")
  (data (i32.const 16) "k")
  (func (export "handle") (result i32) (local $doc i32) (local $n i32)
    (drop (call $input_read (i32.const 128) (i32.const 4)))
    (local.set $n (i32.load (i32.const 128)))
    (local.set $doc (call $doc_open (i32.const 0) (i32.const 5)))
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $n)))
        (drop (call $kv_get (local.get $doc) (i32.const 16) (i32.const 1) (i32.const 256) (i32.const 256)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $more)))
    i32.const 0))
