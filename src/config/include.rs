//! The `include` globs. In: the main file's `include` list (wherever TOML
//! put it) and the main file's folder. Out: the globs made absolute and
//! checked, then every regular file they match, sorted; or a `ConfigError`
//! naming the main file and the `include` key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{ConfigError, Source};
use super::raw::RawMain;

/// The main file's folder, absolute, so that `state.path` and the include
/// globs stay right whatever the working directory is later.
pub(super) fn folder_of(path: &Path) -> PathBuf {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::path::absolute(&folder).unwrap_or(folder)
}

/// The `include` value as written: a list of globs, each with its span.
type Globs = Spanned<Vec<Spanned<String>>>;

/// The `include` list: at the top, or (as TOML reads the contract's own
/// example, where `include` follows `[http]`) inside one settings table.
/// Given in two places, it is refused rather than guessed at. Comes with the
/// dotted key it was found at, for errors about its globs.
pub(super) fn one_include<'a>(
    src: &Source<'_>,
    raw: &'a RawMain,
) -> Result<Option<(&'static str, &'a Globs)>, ConfigError> {
    let places = [
        ("include", raw.include.as_ref()),
        ("aws.include", raw.aws.include.as_ref()),
        ("poll.include", raw.poll.include.as_ref()),
        ("log.include", raw.log.include.as_ref()),
        (
            "state.include",
            raw.state.as_ref().and_then(|s| s.include.as_ref()),
        ),
        (
            "http.include",
            raw.http.as_ref().and_then(|h| h.include.as_ref()),
        ),
        (
            "ha.include",
            raw.ha.as_ref().and_then(|h| h.get_ref().include.as_ref()),
        ),
    ];
    let mut found: Option<(&'static str, &'a Globs)> = None;
    for (key, value) in places {
        let Some(value) = value else { continue };
        if let Some((first, _)) = found {
            return Err(src.invalid(
                value.span(),
                key,
                format!("include is already given as {first}"),
            ));
        }
        found = Some((key, value));
    }
    Ok(found)
}

/// Each glob made absolute against the main file's folder (whose own glob
/// characters are escaped), and checked both as a pattern and as the walk
/// will split it into folders: `w[/]x.toml` is a fine pattern, but its
/// folders `w[` and `]x.toml` are not (issue 7.3: that was a panic).
pub(super) fn include_globs(
    src: &Source<'_>,
    key: &str,
    globs: &[Spanned<String>],
    folder: &Path,
) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::with_capacity(globs.len());
    for glob in globs {
        let text = glob.get_ref();
        if text.trim().is_empty() {
            return Err(src.invalid(glob.span(), key, "a glob must not be empty"));
        }
        let absolute = if Path::new(text).is_absolute() {
            text.clone()
        } else {
            let folder = glob::Pattern::escape(&folder.to_string_lossy());
            Path::new(&folder).join(text).to_string_lossy().into_owned()
        };
        let problem = match glob::Pattern::new(&absolute) {
            Err(e) => Some(e.msg.to_string()),
            Ok(_) => walk(&absolute)
                .err()
                .map(|e| format!("{} (a [...] class cannot hold a '/')", e.msg)),
        };
        if let Some(problem) = problem {
            return Err(src.invalid(
                glob.span(),
                key,
                format!("invalid glob {text:?}: {problem}"),
            ));
        }
        out.push(absolute);
    }
    Ok(out)
}

/// Every regular file the globs match, sorted, without the main file itself.
/// Hidden files (editor leftovers) match only a glob that names the dot, and
/// a file whose name is not UTF-8 matches no glob.
pub(super) fn included_files(main: &Path, globs: &[String]) -> Result<Vec<PathBuf>, ConfigError> {
    let main_canonical = main.canonicalize().ok();
    let mut files = BTreeSet::new();
    for pattern in globs {
        let invalid = |e: glob::PatternError| ConfigError::File {
            file: main.to_path_buf(),
            problem: format!("include: invalid glob {pattern:?}: {}", e.msg),
        };
        // Both sides spelled as `Path::components` spells them (no `//`, no
        // inner `.`), as the walk may join them differently from the glob.
        let whole =
            glob::Pattern::new(&normal(Path::new(pattern)).to_string_lossy()).map_err(invalid)?;
        for entry in walk(pattern).map_err(invalid)? {
            let path = entry.map_err(|e| ConfigError::Read {
                file: e.path().to_path_buf(),
                source: e.into(),
            })?;
            if !whole.matches_path_with(&normal(&path), NAMED_DOTS)
                || !path.is_file()
                || (main_canonical.is_some() && path.canonicalize().ok() == main_canonical)
            {
                continue;
            }
            files.insert(path);
        }
    }
    Ok(files.into_iter().collect())
}

/// Walks the folders a glob names. The walk itself lets `*` match a leading
/// dot: the glob crate's own dot rule panics on a file name that is not UTF-8
/// (issue 7.3). `NAMED_DOTS` applies the rule to what the walk found instead.
fn walk(pattern: &str) -> Result<glob::Paths, glob::PatternError> {
    glob::glob_with(pattern, glob::MatchOptions::new())
}

fn normal(path: &Path) -> PathBuf {
    path.components().collect()
}

/// What an included file's path must match, whole: a leading dot only where
/// the glob writes one, and `*` never spans a folder (as in the walk).
const NAMED_DOTS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

#[cfg(test)]
mod tests {
    use crate::config::fixture::*;
    use crate::config::parse_str;
    use crate::watch::WatchKey;

    #[test]
    fn an_include_after_a_table_header_still_counts_as_the_include() {
        // TOML puts it inside [http]; the contract's example is written so.
        let dir = Dir::new();
        dir.write(
            "w/x.toml",
            &format!("[[watch]]\nexecution_arn = \"{ARN}\"\n"),
        );
        let text = "[http]\nlisten = \"127.0.0.1:9464\"\n\ninclude = [\"w/*.toml\"]\n";
        let config = dir.load(text).unwrap();
        assert_eq!(config.include.len(), 1);
        assert_eq!(config.watches.len(), 1);
        assert!(config.http.is_some());
    }

    #[test]
    fn an_include_given_twice_is_refused_at_the_second() {
        let dir = Dir::new();
        let text = "include = [\"a/*.toml\"]\n[log]\ninclude = [\"b/*.toml\"]\n";
        assert_eq!(
            dir.error(text),
            "{main}:3:11: log.include: include is already given as include"
        );
    }

    #[test]
    fn an_include_that_matches_nothing_is_a_valid_empty_watch_list() {
        let dir = Dir::new();
        let config = dir.load("include = [\"watches.d/*.toml\"]\n").unwrap();
        assert!(config.watches.is_empty());
        assert_eq!(config.files.len(), 1);
    }

    #[test]
    fn relative_state_path_and_include_globs_are_anchored_at_the_main_file() {
        let dir = Dir::new();
        let config = dir
            .load(&format!(
                "include = [\"w/*.toml\"]\n[state]\npath = \"state.json\"\n{ONE_WATCH}"
            ))
            .unwrap();
        let folder = dir.dir.path();
        assert_eq!(config.state.unwrap().path, folder.join("state.json"));
        assert_eq!(
            config.include,
            [folder.join("w/*.toml").to_string_lossy().into_owned()]
        );
    }

    #[test]
    fn included_files_are_read_in_sorted_order_after_the_main_file() {
        let dir = Dir::new();
        let w = |e: &str| {
            format!(
                "[[watch]]\nexecution_arn = \"{}\"\n",
                ARN.replace("run-0001", e)
            )
        };
        dir.write("w/b.toml", &w("run-b"));
        dir.write("w/a.toml", &format!("{}{}", w("run-a1"), w("run-a2")));
        dir.write("w/.hidden.toml", "not toml at all");
        dir.write("w/notes.txt", "not toml at all");
        let config = dir
            .load(&format!("include = [\"w/*.toml\"]\n{ONE_WATCH}"))
            .unwrap();
        let files: Vec<_> = config
            .files
            .iter()
            .map(|f| (f.path.clone(), f.watches))
            .collect();
        let folder = dir.dir.path();
        assert_eq!(
            files,
            [
                (dir.main(), 1),
                (folder.join("w/a.toml"), 2),
                (folder.join("w/b.toml"), 1)
            ]
        );
        assert_eq!(config.watches.len(), 4);
        let key = WatchKey::from_arn(&ARN.replace("run-0001", "run-b")).unwrap();
        assert_eq!(
            &*config.watches.get(&key).unwrap().source,
            folder.join("w/b.toml")
        );
    }

    #[test]
    fn an_included_file_with_a_non_watch_key_is_refused() {
        let dir = Dir::new();
        let included = dir.write(
            "w/x.toml",
            "[[watch]]\nexecution_arn = \"ARN\"\n\n[poll]\njitter = 0.1\n",
        );
        let err = dir
            .load(&format!("include = [\"w/*.toml\"]\n{ONE_WATCH}"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:4:2: poll: unknown key: an included file holds only [[watch]] tables",
                included.display()
            )
        );
    }

    #[test]
    fn parse_str_reads_the_main_file_from_memory_and_includes_from_disk() {
        let dir = Dir::new();
        dir.write(
            "w/x.toml",
            &format!("[[watch]]\nexecution_arn = \"{ARN}\"\n"),
        );
        let config = parse_str("include = [\"w/*.toml\"]\n", &dir.main()).unwrap();
        assert_eq!(config.path, dir.main());
        assert_eq!(config.watches.len(), 1);
        assert!(!dir.main().exists());
    }
}
