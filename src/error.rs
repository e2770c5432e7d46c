//! How an error is shown to people: the whole chain once, as
//! `what: why: root cause` (main's last line, and `error` fields of events).

/// `error: cause: cause`, each source once.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /etc/flowwatch/flowwatch.toml")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_is_written_once_after_a_colon() {
        let error = Outer(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory",
        ));
        assert_eq!(
            error_chain(&error),
            "cannot read /etc/flowwatch/flowwatch.toml: No such file or directory"
        );
    }
}
