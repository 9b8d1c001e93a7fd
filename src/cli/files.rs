//! Scenario arguments: files as given, folders expanded to every `.toml` file beneath them, in
//! a stable order, so `leakrun run scenarios/` runs the whole folder as CI does, and quoted glob
//! patterns (`'scenarios/**/*.toml'`, for shells and CI files that do not expand them) expanded.

use std::path::{Path, PathBuf};

/// Expands `args` into scenario files; a folder contributes its `.toml` files, recursively and
/// sorted; a glob pattern that is not itself a file its matches, sorted. Any other argument is kept,
/// so loading it reports it.
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for arg in args {
        let text = arg.to_string_lossy();
        if !arg.exists() && text.contains(['*', '?', '[']) {
            let matches = glob::glob(&text).map_err(|e| format!("{text}: not a valid pattern: {e}"))?;
            let mut found: Vec<PathBuf> = matches.filter_map(Result::ok).filter(|p| p.is_file()).collect();
            if found.is_empty() {
                return Err(format!("{text}: no file matches this pattern"));
            }
            found.sort();
            files.extend(found);
        } else if arg.is_dir() {
            let before = files.len();
            collect(arg, &mut files).map_err(|e| format!("{}: cannot read the folder: {e}", arg.display()))?;
            if files.len() == before {
                return Err(format!("{}: no scenario files (*.toml) in this folder", arg.display()));
            }
        } else {
            files.push(arg.clone());
        }
    }
    Ok(files)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    // Files of a folder before its subfolders: `scenarios/*.toml`, then `scenarios/controls/`.
    let (dirs, plain): (Vec<PathBuf>, Vec<PathBuf>) = entries.into_iter().partition(|p| p.is_dir());
    files.extend(plain.into_iter().filter(|p| p.extension().is_some_and(|x| x == "toml")));
    for sub in dirs {
        collect(&sub, files)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_expand_to_their_toml_files_files_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("controls")).unwrap();
        for name in ["b.toml", "a.toml", "notes.md", "controls/c.toml"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let files = expand(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.toml", "b.toml", "controls/c.toml"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(
            expand(&[empty.path().to_path_buf()])
                .unwrap_err()
                .contains("no scenario files")
        );
        assert_eq!(expand(&[PathBuf::from("x.toml")]).unwrap(), [PathBuf::from("x.toml")]);
        let pattern = dir.path().join("*.toml");
        let matched = expand(&[pattern]).unwrap();
        assert_eq!(matched, [dir.path().join("a.toml"), dir.path().join("b.toml")]);
        let nothing = expand(&[dir.path().join("*.yaml")]).unwrap_err();
        assert!(nothing.contains("no file matches"), "{nothing}");
    }
}
