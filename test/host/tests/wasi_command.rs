//! Runs hand-written wasm32-wasip1 command modules (WAT) with the WASI command runner.

use linker_test_host::{run_wasi_command, CommandStatus, Invocation, WasiCommand};

/// A command that writes its NUL-separated argv to stdout, "to stderr\n" to stderr, creates
/// `out.txt` containing "written\n" in its first preopened directory (fd 3), and exits with code 3.
const COMMAND: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "to stderr\n")
  (data (i32.const 272) "out.txt")
  (data (i32.const 288) "written\n")

  ;; Writes [ptr, ptr+len) to fd; traps on error.
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (if (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)) (then unreachable)))

  (func (export "_start")
    ;; argc at 16, argv buffer size at 20; argv pointers from 1024, argv buffer from 2048.
    (if (call $args_sizes_get (i32.const 16) (i32.const 20)) (then unreachable))
    (if (call $args_get (i32.const 1024) (i32.const 2048)) (then unreachable))
    (call $write (i32.const 1) (i32.const 2048) (i32.load (i32.const 20)))
    (call $write (i32.const 2) (i32.const 256) (i32.const 10))
    ;; path_open(fd 3, no symlink follow, "out.txt", O_CREAT|O_TRUNC, all rights, fdflags 0) -> fd at 24
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 272) (i32.const 7) (i32.const 9)
          (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 24))
      (then unreachable))
    (call $write (i32.load (i32.const 24)) (i32.const 288) (i32.const 8))
    (call $proc_exit (i32.const 3)))
)
"#;

#[test]
fn command_gets_args_writes_output_and_exits_with_code() {
    let module = wat::parse_str(COMMAND).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run_wasi_command(&module, &["link", "--to", "/work"], (dir.path(), "/work")).unwrap();
    assert_eq!(out.status, CommandStatus::Exited(3));
    assert_eq!(out.exit_code(), Some(3));
    assert!(!out.success());
    assert_eq!(out.stdout, b"main.wasm\0link\0--to\0/work\0");
    assert_eq!(out.stderr, "to stderr\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "written\n"
    );
}

#[test]
fn returning_from_start_is_exit_code_zero() {
    let module =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run_wasi_command(&module, &[], (dir.path(), "/")).unwrap();
    assert!(out.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn a_trap_is_reported_with_output_so_far() {
    let module = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "panicked")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const 8))
            (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
            unreachable))"#,
    )
    .unwrap();
    let runner = WasiCommand::new().unwrap();
    let module = runner.compile(&module).unwrap();
    let invocation = Invocation {
        program: "kinode-link".into(),
        ..Invocation::default()
    };
    let out = runner.run(&module, &invocation).unwrap();
    match &out.status {
        CommandStatus::Trapped(message) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(out.exit_code(), None);
    assert_eq!(out.stderr, "panicked");
    // The runner is reusable.
    assert!(runner.run(&module, &invocation).is_ok());
}

#[test]
fn a_module_importing_something_else_is_an_error() {
    let module =
        wat::parse_str(r#"(module (import "env" "f" (func)) (func (export "_start")))"#).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let error = run_wasi_command(&module, &[], (dir.path(), "/")).unwrap_err();
    assert!(format!("{error:#}").contains("env"), "{error:#}");
}
