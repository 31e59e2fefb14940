//! The client's own checks, run from `cargo test` so the README's one command runs them:
//! the core's unit tests under Node's built-in test runner (`node --test tests/js/`), and
//! the type check of `static/*.js` (`// @ts-check`, JSDoc types) with the TypeScript pinned
//! in `tests/js/package-lock.json` (`npm ci --prefix tests/js` installs it).
//!
//! Without `node` (or without the installed TypeScript) they say they were skipped, unless
//! `JS_TESTS=required` is set (as in CI), where that is a failure.

use std::path::Path;
use std::process::Command;

fn required() -> bool {
    std::env::var("JS_TESTS").as_deref() == Ok("required")
}

fn skip(why: &str) {
    assert!(!required(), "JS_TESTS=required is set but {why}");
    eprintln!("skipping: {why}");
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_client_core_passes_its_unit_tests() {
    if !node_available() {
        return skip("node is not installed (apt-get install nodejs)");
    }
    let out = Command::new("node")
        .args(["--test", "tests/js/"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("node runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The runner found and ran the tests (an empty run also succeeds).
    assert!(report.contains("# pass"), "{report}");
    assert!(!report.contains("# pass 0"), "{report}");
}

#[test]
fn the_client_type_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tsc = root.join("tests/js/node_modules/typescript/bin/tsc");
    if !node_available() || !tsc.exists() {
        return skip("TypeScript is not installed (npm ci --prefix tests/js)");
    }
    let out = Command::new("node")
        .arg(&tsc)
        .args(["-p", "tests/js/tsconfig.json"])
        .current_dir(root)
        .output()
        .expect("tsc runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
