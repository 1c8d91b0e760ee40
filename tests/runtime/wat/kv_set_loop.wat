;; Benchmark: kv_set of a 16-byte value under one of 16 keys of document
;; "bench", N times (N = input as LE i32).
(module
  (import "edgestate" "doc_open" (func $doc_open (param i32 i32) (result i32)))
  (import "edgestate" "kv_set" (func $kv_set (param i32 i32 i32 i32 i32) (result i32)))
  (import "edgestate" "input_read" (func $input_read (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "bench")
  (data (i32.const 16) "key-0123456789abcdef")
  (data (i32.const 64) "0123456789abcdef")
  (func (export "handle") (result i32) (local $doc i32) (local $n i32)
    (drop (call $input_read (i32.const 128) (i32.const 4)))
    (local.set $n (i32.load (i32.const 128)))
    (local.set $doc (call $doc_open (i32.const 0) (i32.const 5)))
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $n)))
        ;; key = "key-" + one character chosen by n % 16
        (drop (call $kv_set (local.get $doc)
          (i32.add (i32.const 16) (i32.and (local.get $n) (i32.const 15))) (i32.const 5)
          (i32.const 64) (i32.const 16)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $more)))
    i32.const 0))
