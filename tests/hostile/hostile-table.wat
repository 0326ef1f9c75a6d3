;; Hostile: grows a table without bound. Written in WAT because Rust cannot emit `table.grow`.
;;
;; A core module implementing `portcullis:tool/tool@0.1.0` by hand (the test wraps it into a
;; component with wit-component and the WIT in `wit/`): `describe` returns one tool from data
;; laid out per the canonical ABI; `call` asks for a million more table elements, then traps.
;; The gateway must refuse the growth and name the table limit.
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (global $bump (mut i32) (i32.const 4096))

  ;; A bump allocator: enough for the host to pass `call` its two strings.
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get $align))))
    (global.set $bump (i32.add (local.get $p) (local.get $size)))
    (local.get $p))

  (func (export "portcullis:tool/tool@0.1.0#describe") (result i32)
    (i32.const 16))

  (func (export "portcullis:tool/tool@0.1.0#call") (param i32 i32 i32 i32) (result i32)
    (drop (table.grow $t (ref.null func) (i32.const 1000000)))
    unreachable)

  ;; describe's return area: list<tool-info> = (ptr 100, len 1)
  (data (i32.const 16) "\64\00\00\00" "\01\00\00\00")
  ;; one tool-info record (52 bytes, align 4); its strings follow
  (data (i32.const 100)
    "\c8\00\00\00" "\0a\00\00\00"                  ;; name: (200, 10)
    "\00\00\00\00" "\00\00\00\00" "\00\00\00\00"   ;; title: none
    "\f0\00\00\00" "\1c\00\00\00"                  ;; description: (240, 28)
    "\2c\01\00\00" "\11\00\00\00"                  ;; input-schema: (300, 17)
    "\00\00\00\00" "\00\00\00\00" "\00\00\00\00"   ;; output-schema: none
    "\00\00\00\00")                                ;; annotations: all false
  (data (i32.const 200) "grow_table")
  (data (i32.const 240) "Grows a table without bound.")
  (data (i32.const 300) "{\"type\":\"object\"}")
)
