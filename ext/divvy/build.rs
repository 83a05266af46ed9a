//! Links the extension the way Ruby loads it: Ruby's own functions are
//! found in the process that loads the library, not at link time. Linux's
//! linker allows that by default; macOS's must be told.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-undefined,dynamic_lookup");
    }
}
