//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the files it finds, and
//! cargo tracks only those, not the folders (sqlx's documented build script).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
