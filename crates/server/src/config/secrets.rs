//! Secrets given as files (a Key Vault CSI mount): each secret variable has a `_FILE` twin naming
//! a file that holds the value. Giving both is an error naming both; a trailing newline is not
//! part of the value. Values and file contents never appear in an error.

use std::path::{Path, PathBuf};

use super::{bad, ConfigError};

/// Reads a file holding one secret: its contents without trailing newlines. `var` names the
/// variable that gave the path, for the error.
pub fn read_secret_file(var: &'static str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(var, format!("cannot read {}: {e}", path.display())))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        return Err(bad(var, format!("{} is empty", path.display())));
    }
    Ok(value.to_owned())
}

/// The value of a secret given either plainly (`var`) or as a file (`file_var`), if either.
pub fn either(
    var: &'static str,
    plain: &Option<String>,
    file_var: &'static str,
    file: &Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    match (plain, file) {
        (Some(_), Some(_)) => Err(bad(
            file_var,
            format!("set either {var} or {file_var}, not both"),
        )),
        (Some(value), None) => Ok(Some(value.clone())),
        (None, Some(path)) => read_secret_file(file_var, path).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_its_value_without_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-url");
        std::fs::write(&path, "postgres://u:p@h/db\r\n").unwrap();
        let got = either("DB_URL", &None, "DB_URL_FILE", &Some(path)).unwrap();
        assert_eq!(got.as_deref(), Some("postgres://u:p@h/db"));
    }

    #[test]
    fn both_forms_at_once_name_both_and_no_value() {
        let e = either(
            "REDIS_URL",
            &Some("redis://:hunter2@h".into()),
            "REDIS_URL_FILE",
            &Some("/x".into()),
        )
        .unwrap_err();
        assert_eq!(e.var, "REDIS_URL_FILE");
        assert!(e.reason.contains("REDIS_URL or REDIS_URL_FILE"), "{e}");
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn missing_and_empty_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = either("BUS_CONN", &None, "BUS_CONN_FILE", &Some(missing)).unwrap_err();
        assert_eq!(e.var, "BUS_CONN_FILE");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = either("BUS_CONN", &None, "BUS_CONN_FILE", &Some(empty)).unwrap_err();
        assert!(e.reason.contains("is empty"), "{e}");
    }
}
