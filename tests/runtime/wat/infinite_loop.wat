;; Spins forever: must end by fuel or by the wall-time deadline.
(module
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (loop $forever (br $forever))
    i32.const 0))
