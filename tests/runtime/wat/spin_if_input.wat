;; With an empty input: returns at once (a short, well-behaved run). With any
;; input: logs "spinning" (so a test knows it holds its slot), then spins until
;; its wall-time budget ends it.
(module
  (import "edgestate" "input_len" (func $input_len (result i32)))
  (import "edgestate" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "spinning")
  (func (export "handle") (result i32)
    (if (i32.eqz (call $input_len)) (then (return (i32.const 0))))
    (call $log (i32.const 3) (i32.const 0) (i32.const 8))
    (loop $forever (br $forever))
    i32.const 0))
