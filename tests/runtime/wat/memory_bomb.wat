;; Grows memory a page at a time until refused, then traps like an allocator
;; that cannot recover.
(module
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
