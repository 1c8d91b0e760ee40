;; Imports a host function the ABI does not have.
(module
  (import "edgestate" "launch_missiles" (func $launch (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32) (call $launch)))
