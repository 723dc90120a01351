//! Runs hand-written `process-v1` components (WAT) on the test host.

use linker_test_host::{Host, RunError};
use wasmtime::Trap;

/// A process component: imports part of `kinode:process/standard@1.0.0` (and, for stderr, the WASI
/// interfaces a Rust panic goes through), exports `init: func(our: string)` whose core body is
/// `init_body`, and imports `extra_imports`.
///
/// Core memory layout: `init`'s `our` string wherever the host's realloc put it (from 4096 up),
/// scratch space at 16..64, constant strings from 256 (`data`).
fn process_component(init_body: &str, data: &str, extra_imports: &str) -> Vec<u8> {
    let wat = format!(
        r#"
(component
  (import "wasi:io/error@0.2.0" (instance $io-error
    (export "error" (type (sub resource)))
  ))
  (alias export $io-error "error" (type $error))
  (import "wasi:io/streams@0.2.0" (instance $streams
    (export "output-stream" (type $output-stream (sub resource)))
    (alias outer 1 $error (type $error))
    (export "error" (type $error' (eq $error)))
    (type $stream-error (variant (case "last-operation-failed" (own $error')) (case "closed")))
    (export "stream-error" (type $stream-error' (eq $stream-error)))
    (export "[method]output-stream.blocking-write-and-flush"
      (func (param "self" (borrow $output-stream)) (param "contents" (list u8)) (result (result (error $stream-error')))))
  ))
  (alias export $streams "output-stream" (type $output-stream))
  (import "wasi:cli/stderr@0.2.0" (instance $stderr
    (alias outer 1 $output-stream (type $output-stream))
    (export "output-stream" (type $output-stream' (eq $output-stream)))
    (export "get-stderr" (func (result (own $output-stream'))))
  ))
  (import "wasi:filesystem/types@0.2.0" (instance $filesystem
    (export "descriptor" (type (sub resource)))
  ))
  (alias export $filesystem "descriptor" (type $descriptor))
  (import "wasi:filesystem/preopens@0.2.0" (instance $preopens
    (alias outer 1 $descriptor (type $descriptor))
    (export "descriptor" (type $descriptor' (eq $descriptor)))
    (export "get-directories" (func (result (list (tuple (own $descriptor') string)))))
  ))
  (import "wasi:cli/environment@0.2.0" (instance $environment
    (export "get-environment" (func (result (list (tuple string string)))))
  ))
  (import "kinode:process/standard@1.0.0" (instance $std
    (type $process-id (record (field "process-name" string) (field "package-name" string) (field "publisher-node" string)))
    (export "process-id" (type $process-id' (eq $process-id)))
    (type $address (record (field "node" string) (field "process" $process-id')))
    (export "address" (type $address' (eq $address)))
    (type $capability (record (field "issuer" $address') (field "params" string)))
    (export "capability" (type $capability' (eq $capability)))
    (export "print-to-terminal" (func (param "verbosity" u8) (param "message" string)))
    (export "our" (func (result $address')))
    (export "set-state" (func (param "bytes" (list u8))))
    (export "get-state" (func (result (option (list u8)))))
    (export "drop-capabilities" (func (param "caps" (list $capability'))))
  ))
  {extra_imports}

  (core module $libc
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 4096))
    ;; A bump allocator; the host allocates `init`'s argument and returned strings with it.
    (func (export "realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
      (local $ptr i32)
      (local.set $ptr
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
      (local.get $ptr))
  )
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $memory))
  (alias core export $libc "realloc" (core func $realloc))

  (core func $print (canon lower (func $std "print-to-terminal") (memory $memory) string-encoding=utf8))
  (core func $our (canon lower (func $std "our") (memory $memory) (realloc $realloc) string-encoding=utf8))
  (core func $set-state (canon lower (func $std "set-state") (memory $memory)))
  (core func $get-state (canon lower (func $std "get-state") (memory $memory) (realloc $realloc)))
  (core func $drop-capabilities (canon lower (func $std "drop-capabilities") (memory $memory)))
  (core func $get-stderr (canon lower (func $stderr "get-stderr")))
  (core func $get-environment
    (canon lower (func $environment "get-environment") (memory $memory) (realloc $realloc) string-encoding=utf8))
  (core func $get-directories
    (canon lower (func $preopens "get-directories") (memory $memory) (realloc $realloc) string-encoding=utf8))
  (core func $write (canon lower (func $streams "[method]output-stream.blocking-write-and-flush") (memory $memory)))

  (core module $main
    (import "libc" "memory" (memory 1))
    (import "std" "print-to-terminal" (func $print (param i32 i32 i32)))
    (import "std" "our" (func $our (param i32)))
    (import "std" "set-state" (func $set-state (param i32 i32)))
    (import "std" "get-state" (func $get-state (param i32)))
    (import "std" "drop-capabilities" (func $drop-capabilities (param i32 i32)))
    (import "wasi" "get-stderr" (func $get-stderr (result i32)))
    (import "wasi" "write" (func $write (param i32 i32 i32 i32)))
    (import "wasi" "get-environment" (func $get-environment (param i32)))
    (import "wasi" "get-directories" (func $get-directories (param i32)))
    (func $init (export "init") (param $our i32) (param $our-len i32)
      {init_body})
    (data (i32.const 256) "{data}")
  )
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "std" (instance
      (export "print-to-terminal" (func $print))
      (export "our" (func $our))
      (export "set-state" (func $set-state))
      (export "get-state" (func $get-state))
      (export "drop-capabilities" (func $drop-capabilities))))
    (with "wasi" (instance
      (export "get-stderr" (func $get-stderr))
      (export "write" (func $write))
      (export "get-environment" (func $get-environment))
      (export "get-directories" (func $get-directories))))
  ))
  (func (export "init") (param "our" string)
    (canon lift (core func $main "init") (memory $memory) (realloc $realloc) string-encoding=utf8))
)
"#
    );
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("test component does not parse: {e}"))
}

const OUR: &str = "fake.os@hello:greetings:template.os";

#[test]
fn init_prints_and_sees_our() {
    // Prints `our` as received by init (verbosity 0), then the node and process name from `our()`
    // (verbosity 1), then the constant "hello from init" (verbosity 2).
    let body = r#"
      (call $print (i32.const 0) (local.get $our) (local.get $our-len))
      (call $our (i32.const 16))
      (call $print (i32.const 1) (i32.load (i32.const 16)) (i32.load (i32.const 20)))
      (call $print (i32.const 1) (i32.load (i32.const 24)) (i32.load (i32.const 28)))
      (call $print (i32.const 1) (i32.load (i32.const 40)) (i32.load (i32.const 44)))
      (call $print (i32.const 2) (i32.const 256) (i32.const 15))"#;
    let wasm = process_component(body, "hello from init", "");
    let host = Host::new().unwrap();
    let run = host.run_init(&wasm, OUR).unwrap();
    assert_eq!(
        run.print_messages(),
        [OUR, "fake.os", "hello", "template.os", "hello from init"]
    );
    let verbosities: Vec<u8> = run.prints.iter().map(|p| p.verbosity).collect();
    assert_eq!(verbosities, [0, 1, 1, 1, 2]);
    assert_eq!(run.stderr, "");
    assert_eq!(run.state, None);
}

#[test]
fn state_is_kept_and_read_back() {
    // set-state("state!"), get-state() -> some(list) at 16: discriminant, pointer, length; print
    // the bytes read back.
    let body = r#"
      (call $set-state (i32.const 256) (i32.const 6))
      (call $get-state (i32.const 16))
      (if (i32.ne (i32.load8_u (i32.const 16)) (i32.const 1)) (then unreachable))
      (call $print (i32.const 0) (i32.load (i32.const 20)) (i32.load (i32.const 24)))"#;
    let wasm = process_component(body, "state!", "");
    let host = Host::new().unwrap();
    let run = host.run_init(&wasm, OUR).unwrap();
    assert_eq!(run.print_messages(), ["state!"]);
    assert_eq!(run.state.as_deref(), Some(&b"state!"[..]));
}

#[test]
fn same_host_runs_many_processes() {
    let wasm = process_component(
        "(call $print (i32.const 0) (local.get $our) (local.get $our-len))",
        "",
        "",
    );
    let host = Host::new().unwrap();
    for our in ["a.os@p:q:r", "b.os@x:y:z.os"] {
        assert_eq!(host.run_init(&wasm, our).unwrap().print_messages(), [our]);
    }
    // TEMP_DIR of each process exists under the node's vfs, as `{package}:{publisher}/tmp`.
    assert!(host.home().join("vfs/q:r/tmp").is_dir());
    assert!(host.home().join("vfs/y:z.os/tmp").is_dir());
}

#[test]
fn temp_dir_is_the_only_environment_variable() {
    // get-environment() at 16: pointer and length of a list of (key, value) string pairs; print
    // count, key, value.
    let body = r#"
      (call $get-environment (i32.const 16))
      (if (i32.ne (i32.load (i32.const 20)) (i32.const 1)) (then unreachable))
      (call $print (i32.const 0) (i32.load (i32.load (i32.const 16))) (i32.load offset=4 (i32.load (i32.const 16))))
      (call $print (i32.const 0) (i32.load offset=8 (i32.load (i32.const 16))) (i32.load offset=12 (i32.load (i32.const 16))))"#;
    let wasm = process_component(body, "", "");
    let host = Host::new().unwrap();
    let run = host.run_init(&wasm, OUR).unwrap();
    let temp_dir = host.home().join("vfs/greetings:template.os/tmp");
    assert_eq!(
        run.print_messages(),
        ["TEMP_DIR", temp_dir.to_str().unwrap()]
    );
}

#[test]
fn temp_dir_is_the_only_preopen_under_its_host_path() {
    // get-directories() at 16: pointer and length of a list of (descriptor, path) pairs (12 bytes
    // each).
    let body = r#"
      (call $get-directories (i32.const 16))
      (if (i32.ne (i32.load (i32.const 20)) (i32.const 1)) (then unreachable))
      (call $print (i32.const 0) (i32.load offset=4 (i32.load (i32.const 16))) (i32.load offset=8 (i32.load (i32.const 16))))"#;
    let wasm = process_component(body, "", "");
    let host = Host::new().unwrap();
    let run = host.run_init(&wasm, OUR).unwrap();
    let temp_dir = host.home().join("vfs/greetings:template.os/tmp");
    assert_eq!(run.print_messages(), [temp_dir.to_str().unwrap()]);
}

#[test]
fn unknown_import_fails_to_instantiate() {
    // A leftover API import that was never linked.
    let extra = r#"
  (import "kinode:process/mathlib@1.0.0" (instance $mathlib
    (export "add" (func (param "a" u32) (param "b" u32) (result u32)))
  ))"#;
    let wasm = process_component(
        "(call $print (i32.const 0) (local.get $our) (local.get $our-len))",
        "",
        extra,
    );
    let host = Host::new().unwrap();
    match host.run_init(&wasm, OUR) {
        Err(RunError::Instantiate { import, message }) => {
            assert_eq!(
                import.as_deref(),
                Some("kinode:process/mathlib@1.0.0"),
                "{message}"
            );
            assert!(
                message.contains("kinode:process/mathlib@1.0.0"),
                "{message}"
            );
        }
        other => panic!("expected RunError::Instantiate, got {other:?}"),
    }
}

#[test]
fn older_standard_version_fails_to_instantiate() {
    // A component built against kinode:process/standard@0.7.0 (the seed experiments) does not cross
    // the semver boundary.
    let extra = r#"
  (import "kinode:process/standard@0.7.0" (instance $old
    (export "print-to-terminal" (func (param "verbosity" u8) (param "message" string)))
  ))"#;
    let wasm = process_component("nop", "", extra);
    let host = Host::new().unwrap();
    match host.run_init(&wasm, OUR) {
        Err(RunError::Instantiate { import, .. }) => {
            assert_eq!(import.as_deref(), Some("kinode:process/standard@0.7.0"));
        }
        other => panic!("expected RunError::Instantiate, got {other:?}"),
    }
}

#[test]
fn panic_in_init_is_a_trap_with_stderr() {
    // What a Rust panic does: the message goes to stderr through wasi:cli/stderr, then
    // `unreachable`.
    let message = "panicked at src/lib.rs:1:1:\\0Aboom";
    let body = r#"
      (call $print (i32.const 0) (i32.const 256) (i32.const 5))
      (call $write (call $get-stderr) (i32.const 256) (i32.const 32) (i32.const 16))
      (if (i32.load8_u (i32.const 16)) (then (call $print (i32.const 0) (i32.const 256) (i32.const 5))))
      unreachable"#;
    let wasm = process_component(body, message, "");
    let host = Host::new().unwrap();
    match host.run_init(&wasm, OUR) {
        Err(RunError::Trap {
            message,
            trap,
            details,
            stderr,
            prints,
        }) => {
            assert_eq!(trap, Some(Trap::UnreachableCodeReached), "{details}");
            assert!(message.contains("unreachable"), "{message}");
            assert_eq!(stderr, "panicked at src/lib.rs:1:1:\nboom");
            assert_eq!(prints.len(), 1, "stderr write failed: {prints:?}");
            assert!(
                details.contains("wasm backtrace") && details.contains("main!init"),
                "{details}"
            );
        }
        other => panic!("expected RunError::Trap, got {other:?}"),
    }
}

#[test]
fn drop_capabilities_is_served() {
    let body = "(call $drop-capabilities (i32.const 0) (i32.const 0))";
    let wasm = process_component(body, "", "");
    let host = Host::new().unwrap();
    let run = host.run_init(&wasm, OUR).unwrap();
    assert!(run.prints.is_empty());
}

#[test]
fn invalid_bytes_do_not_compile() {
    let host = Host::new().unwrap();
    assert!(matches!(
        host.run_init(b"\0asm not really", OUR),
        Err(RunError::Compile { .. })
    ));
    // A core module is not a component either.
    let core = wat::parse_str("(module)").unwrap();
    assert!(matches!(
        host.run_init(&core, OUR),
        Err(RunError::Compile { .. })
    ));
}

#[test]
fn bad_address_is_rejected() {
    let wasm = process_component("nop", "", "");
    let host = Host::new().unwrap();
    assert!(matches!(
        host.run_init(&wasm, "not-an-address"),
        Err(RunError::BadAddress { .. })
    ));
}

#[test]
fn missing_init_export_fails_to_instantiate() {
    let wasm = wat::parse_str("(component)").unwrap();
    let host = Host::new().unwrap();
    assert!(matches!(
        host.run_init(&wasm, OUR),
        Err(RunError::Instantiate { import: None, .. })
    ));
}
