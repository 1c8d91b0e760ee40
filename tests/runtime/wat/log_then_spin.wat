;; Logs "spinning" (so a test knows it holds its slot), then spins until its
;; wall-time budget ends it.
(module
  (import "edgestate" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "spinning")
  (func (export "handle") (result i32)
    (call $log (i32.const 3) (i32.const 0) (i32.const 8))
    (loop $forever (br $forever))
    i32.const 0))
