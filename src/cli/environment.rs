//! The environment a run reads settings from: the process's variables first, then a `.env` file in
//! the working directory (the warp report's habit), each value labelled with where it came from
//! so the result can say.

use std::collections::BTreeMap;
use std::path::Path;

/// Variables from the process and from `.env`.
#[derive(Debug, Default)]
pub struct Environment {
    dotenv: BTreeMap<String, String>,
}

impl Environment {
    /// Reads `.env` in the working directory, if there is one.
    pub fn load() -> Result<Self, String> {
        Self::from_file(Path::new(".env"))
    }

    /// Reads the given `.env` file, if it exists; a malformed one is an error naming its line.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let entries = dotenvy::from_path_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut dotenv = BTreeMap::new();
        for entry in entries {
            let (key, value) = entry.map_err(|e| format!("{}: {e}", path.display()))?;
            dotenv.insert(key, value);
        }
        Ok(Self { dotenv })
    }

    /// The value of `name` and where it came from (`NAME` or `NAME from .env`).
    pub fn get(&self, name: &str) -> Option<(String, String)> {
        if let Ok(value) = std::env::var(name) {
            return Some((value, name.to_string()));
        }
        self.dotenv
            .get(name)
            .map(|value| (value.clone(), format!("{name} from .env")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_values_are_read_and_labelled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "LEAKRUN_TEST_ONLY_URL=redis://127.0.0.1:7000/\n# a comment\n").unwrap();
        let env = Environment::from_file(&path).unwrap();
        assert_eq!(
            env.get("LEAKRUN_TEST_ONLY_URL"),
            Some((
                "redis://127.0.0.1:7000/".to_string(),
                "LEAKRUN_TEST_ONLY_URL from .env".to_string()
            ))
        );
        assert_eq!(env.get("LEAKRUN_TEST_ONLY_ABSENT"), None);
        std::fs::write(&path, "NOT VALID LINE\n").unwrap();
        assert!(Environment::from_file(&path).unwrap_err().contains(".env"));
    }
}
