//! Config input as an attacker writes it (issue 7.3): arbitrary and mutated
//! TOML, include globs and watch files go through `config::load` from real
//! files in a temp dir, includes included. The loader never panics, and every
//! error names one of the files it was given. Case counts keep the whole
//! module to a few seconds in a debug build.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use proptest::prelude::*;

use flowwatch::config;

const EXAMPLE: &str = include_str!("../../config/example.toml");
const EXAMPLE_WATCHES: &str = include_str!("../../config/watches.d/example.toml");
const ARN: &str =
    "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001";

/// Valid watch files, the seeds the watch-file mutations start from.
fn watch_files() -> Vec<String> {
    vec![
        EXAMPLE_WATCHES.to_string(),
        format!("[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ team = \"search\" }}\n"),
        "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-1\"\nregion = \"eu-west-1\"\n".to_string(),
        format!("[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"{ARN}\"\n[[watch]]\nexecution_arn = \"{ARN}\"\n"),
    ]
}

/// Pieces of TOML and of our keys, so that junk often gets past the parser
/// and reaches the checks behind it.
const JUNK: &[&str] = &[
    "\n",
    "[",
    "]",
    "[[watch]]\n",
    "[poll]\n",
    "[http]\n",
    "[state]\n",
    "=",
    "\"",
    "'",
    "{",
    "}",
    ",",
    "#",
    "\\",
    "include = [\"",
    "*",
    "?",
    "/",
    "..",
    "\u{e9}",
    "\u{0}",
    "\u{ff}",
    "execution_arn = \"",
    "flow = \"",
    "alias = \"",
    "execution = \"",
    "region = \"",
    "arn:aws:",
    "labels = { a = \"",
    "= 1e999",
    "= -0",
    "= nan",
    "\"0s\"",
    "\"99999999999999999999h\"",
    "max_in_flight = 9223372036854775807\n",
    "\r\n",
    "\t",
    "\u{feff}",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR the byte at this position (modulo the length) with a non-zero mask.
    Flip(usize, u8),
    /// Keep only this many bytes (modulo the length + 1).
    Truncate(usize),
    /// Insert one of `JUNK` at this position.
    Insert(usize, usize),
    /// Insert arbitrary bytes at this position.
    InsertBytes(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        4 => (any::<usize>(), 0..JUNK.len()).prop_map(|(at, j)| Mutation::Insert(at, j)),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::InsertBytes(at, bytes)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Flip(at, mask) if len > 0 => bytes[at % len] ^= mask,
            Mutation::Flip(..) => {}
            Mutation::Truncate(keep) => bytes.truncate(keep % (len + 1)),
            Mutation::Insert(at, j) => {
                let at = at % (len + 1);
                bytes.splice(at..at, JUNK[*j].bytes());
            }
            Mutation::InsertBytes(at, junk) => {
                let at = at % (len + 1);
                bytes.splice(at..at, junk.iter().copied());
            }
        }
    }
    bytes
}

/// A temp dir with the main file and its watch folder, as `check` would see it.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("a file has a folder")).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }
    fn main(&self) -> PathBuf {
        self.dir.path().join("flowwatch.toml")
    }
    /// Loads the main file (never panicking, or the property fails) and, when
    /// it is refused, checks that the error names one of `files`; returns the
    /// error as shown.
    fn load(&self, files: &[PathBuf]) -> Result<Option<String>, TestCaseError> {
        let Err(err) = config::load(&self.main()) else {
            return Ok(None);
        };
        let shown = err.to_string();
        prop_assert!(
            files
                .iter()
                .any(|f| shown.contains(&f.display().to_string())),
            "the error names none of {files:?}: {shown}"
        );
        prop_assert!(!shown.contains('\n'), "one line: {shown}");
        Ok(Some(shown))
    }
}

/// A glob as TOML writes a string, whatever characters it holds.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Include globs from the characters globs treat specially. None climbs out
/// of the temp dir or walks the whole disk, so a case stays fast.
fn glob() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r"[aw/x.*?\[\]!\-\\^{}é ]{1,12}(\.toml)?")
        .expect("the glob alphabet is a valid regex")
        .prop_filter("stays inside the temp dir", |g| {
            !g.contains("..") && !g.starts_with('/')
        })
}

/// The watch folder every glob case reads: a valid file, a hidden one, one
/// with glob characters in its name, and one whose name is not UTF-8.
fn watch_folder(files: &Files) -> Vec<PathBuf> {
    let mut written = vec![
        files.write("w/a.toml", watch_files()[1].as_bytes()),
        files.write("w/.hidden.toml", b"not toml"),
        files.write("w/[x].toml", watch_files()[2].as_bytes()),
        files.write("w/x/b.toml", EXAMPLE_WATCHES.as_bytes()),
    ];
    let not_utf8 = std::ffi::OsStr::from_bytes(b"w/\xff.toml");
    let raw = files.dir.path().join(not_utf8);
    std::fs::write(&raw, watch_files()[1].as_bytes()).unwrap();
    written.push(raw);
    written
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_mutated_example_config_never_panics_and_its_errors_name_a_file(
        mutations in proptest::collection::vec(mutation(), 1..6)
    ) {
        let files = Files::new();
        let main = files.write("flowwatch.toml", &mutate(EXAMPLE, &mutations));
        let included = files.write("watches.d/example.toml", EXAMPLE_WATCHES.as_bytes());
        files.load(&[main, included])?;
    }

    #[test]
    fn a_mutated_watch_file_never_panics_and_its_errors_name_a_file(
        seed in 0..4usize,
        mutations in proptest::collection::vec(mutation(), 1..6)
    ) {
        let files = Files::new();
        let main = files.write(
            "flowwatch.toml",
            format!("include = [\"w/*.toml\"]\n[[watch]]\nexecution_arn = \"{ARN}\"\n").as_bytes(),
        );
        let included = files.write("w/x.toml", &mutate(&watch_files()[seed], &mutations));
        files.load(&[main, included])?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_as_a_main_or_watch_file_never_panics(
        main_text in proptest::collection::vec(any::<u8>(), 0..200),
        junk in proptest::collection::vec(0..JUNK.len(), 0..24),
        watch_text in ".{0,120}",
    ) {
        let files = Files::new();
        // Half of the main file is raw bytes, half a soup of TOML pieces.
        let mut text = main_text;
        for j in junk {
            text.extend_from_slice(JUNK[j].as_bytes());
        }
        let main = files.write("flowwatch.toml", &text);
        let included = files.write("watches.d/x.toml", watch_text.as_bytes());
        files.load(&[main.clone(), included.clone()])?;

        // The same soup as an included file behind a valid main file.
        files.write("flowwatch.toml", b"include = [\"watches.d/*.toml\"]\n");
        files.write("watches.d/x.toml", &text);
        files.load(&[main, included])?;
    }

    #[test]
    fn arbitrary_include_globs_never_panic_and_their_errors_name_the_main_file(
        globs in proptest::collection::vec(glob(), 1..4),
        in_http in any::<bool>(),
    ) {
        let files = Files::new();
        let mut named = watch_folder(&files);
        let list: Vec<String> = globs.iter().map(|g| toml_string(g)).collect();
        let include = format!("include = [{}]\n", list.join(", "));
        let text = if in_http {
            format!("[http]\n{include}")
        } else {
            include
        };
        let main = files.write("flowwatch.toml", text.as_bytes());
        named.push(main);
        if let Some(shown) = files.load(&named)?
            && shown.contains("invalid glob")
        {
            let key = if in_http { "http.include" } else { "include" };
            prop_assert!(shown.contains(&format!(" {key}: invalid glob")), "the key is named: {shown}");
        }
    }
}

#[test]
fn a_glob_whose_class_holds_a_slash_is_an_error_at_the_include_key() {
    let files = Files::new();
    let main = files.write("flowwatch.toml", b"include = [\"w[/]x.toml\"]\n");
    let err = config::load(&main).expect_err("the glob is refused");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1:12: include: invalid glob \"w[/]x.toml\": invalid range pattern (a [...] class cannot hold a '/')",
            main.display()
        )
    );
}

#[test]
fn a_file_name_that_is_not_utf8_matches_no_glob_and_panics_nothing() {
    let files = Files::new();
    watch_folder(&files);
    let main = files.write("flowwatch.toml", b"include = [\"w/*.toml\", \"w/*\"]\n");
    let config = config::load(&main).expect("the folder's valid files load");
    let names: Vec<String> = config
        .files
        .iter()
        .skip(1)
        .map(|f| {
            f.path
                .strip_prefix(files.dir.path())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    // The hidden file and the one whose name is not UTF-8 are left out.
    assert_eq!(names, ["w/[x].toml", "w/a.toml"]);
}
