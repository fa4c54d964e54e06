//! Text from outside the agent, made safe to log: an endpoint's answer, an error that
//! quotes one, a value from metadata. Such text can be huge (a 200 MB JSON string), can
//! carry terminal escapes or line breaks that forge log lines, and can echo a request's
//! credentials back (an error page that prints the headers it got). [`for_log`] cuts it
//! to [`MAX_LOGGED_CHARS`], escapes control characters, and replaces what looks like a
//! secret: AWS access key ids, session tokens and request signatures.

/// Most characters of outside text in one log line: enough for any real error message.
pub const MAX_LOGGED_CHARS: usize = 300;
/// Most characters of an error with its causes (the SDK's list of the credential
/// providers it tried is about 600).
pub const MAX_CHAIN_CHARS: usize = 1_000;
/// What stands in for a secret.
const REDACTED: &str = "<redacted>";
/// Headers and query parameters whose values are credentials, in lower case.
const SECRET_KEYS: [&str; 4] = [
    "x-amz-security-token",
    "x-aws-ec2-metadata-token",
    "signature",
    "authorization",
];
/// Session tokens are long runs of base64; nothing else in an error message is.
const TOKEN_MIN_LEN: usize = 80;

/// `text` as it may go into a log line: secrets replaced, control characters escaped,
/// at most [`MAX_LOGGED_CHARS`] characters (and a note of how much was cut).
pub fn for_log(text: &str) -> String {
    cut_and_escape(&redact(text), MAX_LOGGED_CHARS)
}

fn cut_and_escape(redacted: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(redacted.len().min(max_chars + 32));
    for (shown, c) in redacted.chars().enumerate() {
        if shown == max_chars {
            let left = redacted.len() - redacted.char_indices().nth(shown).map_or(0, |(i, _)| i);
            out.push_str(&format!("… ({left} more bytes)"));
            return out;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// `text` with credentials replaced: the values after a secret header or parameter
/// name, AWS access key ids (`AKIA…`, `ASIA…`), and long base64 runs (session tokens).
pub fn redact(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(end) = secret_value_end(text, i) {
            // Keep the name and its separator, replace the value.
            let (name_end, value_end) = end;
            out.push_str(&text[i..name_end]);
            out.push_str(REDACTED);
            i = value_end;
            continue;
        }
        if let Some(len) = access_key_id(&bytes[i..]) {
            out.push_str(&text[i..i + 4]);
            out.push_str(REDACTED);
            i += len;
            continue;
        }
        let run = bytes[i..].iter().take_while(|b| is_base64(**b)).count();
        if run >= TOKEN_MIN_LEN && (i == 0 || !is_base64(bytes[i - 1])) {
            out.push_str(REDACTED);
            i += run;
            continue;
        }
        let step = if run > 0 {
            run
        } else {
            text[i..].chars().next().map_or(1, char::len_utf8)
        };
        out.push_str(&text[i..i + step]);
        i += step;
    }
    out
}

/// If a secret's name starts at `at` (`X-Amz-Security-Token: v`, `Signature=v`), where
/// the name ends (separator included) and where its value ends.
fn secret_value_end(text: &str, at: usize) -> Option<(usize, usize)> {
    let rest = &text[at..];
    let starts_word = at == 0 || !text.as_bytes()[at - 1].is_ascii_alphanumeric();
    if !starts_word {
        return None;
    }
    let key = SECRET_KEYS.iter().find(|k| {
        rest.len() >= k.len() && rest.as_bytes()[..k.len()].eq_ignore_ascii_case(k.as_bytes())
    })?;
    let after = &rest[key.len()..];
    let separator = after
        .bytes()
        .take_while(|b| matches!(b, b':' | b'=' | b' ' | b'"' | b'\''))
        .count();
    if separator == 0 || !after[..separator].contains([':', '=']) {
        return None;
    }
    let value = after[separator..]
        .bytes()
        .take_while(|b| !matches!(b, b'\n' | b'\r' | b'&' | b',' | b'"' | b'\'' | b'}'))
        .count();
    let name_end = at + key.len() + separator;
    (value > 0).then_some((name_end, name_end + value))
}

/// The length of an AWS access key id at the start of `bytes` (`AKIA` or `ASIA` and 16
/// upper-case letters or digits, standing alone).
fn access_key_id(bytes: &[u8]) -> Option<usize> {
    const LEN: usize = 20;
    let id = bytes.get(..LEN)?;
    let prefix = &id[..4] == b"AKIA" || &id[..4] == b"ASIA";
    let body = id[4..]
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let alone = bytes.get(LEN).is_none_or(|b| !b.is_ascii_alphanumeric());
    (prefix && body && alone).then_some(LEN)
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// An error and its causes, one after the other (a cause already in the text is not
/// repeated), made safe to log as [`for_log`] does, within [`MAX_CHAIN_CHARS`].
/// Messages on several lines (the SDK lists each credential provider it tried on one)
/// are joined with `; `.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    cut_and_escape(&redact(&lines.join("; ")), MAX_CHAIN_CHARS)
}

/// A URL without its user information (`http://user:password@host/` → `http://host/`):
/// what may be logged of it.
pub fn url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = text[authority_start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| authority_start + i);
    match text[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}{}",
            &text[..authority_start],
            &text[authority_start + at + 1..]
        ),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_a_note_of_what_was_left_out() {
        let text = "abc, ".repeat(40_000);
        let shown = for_log(&text);
        assert!(shown.starts_with(&text[..MAX_LOGGED_CHARS]), "{shown}");
        assert!(shown.ends_with("… (199700 more bytes)"), "{shown}");
    }

    #[test]
    fn control_characters_are_escaped_so_no_line_can_be_forged() {
        let shown = for_log("bad\r\n[ERROR] forged\u{1b}[2J\u{7}");
        assert_eq!(shown, "bad\\r\\n[ERROR] forged\\u{1b}[2J\\u{7}");
    }

    #[test]
    fn echoed_credentials_are_redacted() {
        let echoed = "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261202/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024\nX-Amz-Security-Token: IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDexample+token/that/is/long==\nx-amz-date: 20261202T000000Z";
        let shown = redact(echoed);
        for secret in [
            "AKIAIOSFODNN7EXAMPLE",
            "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024",
            "IQoJb3JpZ2luX2VjEJr",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("x-amz-date: 20261202T000000Z"), "{shown}");
        let key = redact("the key ASIAY34FZKBOKMUTVV7A is not allowed");
        assert_eq!(key, "the key ASIA<redacted> is not allowed");
        let query = redact("GET /?X-Amz-Signature=abc123&X-Amz-Date=1");
        assert_eq!(query, "GET /?X-Amz-Signature=<redacted>&X-Amz-Date=1");
    }

    #[test]
    fn ordinary_messages_are_left_alone() {
        for text in [
            "connection refused (os error 111)",
            "HTTP 500 Internal Server Error",
            "AKIAshort and ASIA are words here",
            "Signature is required",
        ] {
            assert_eq!(for_log(text), text);
        }
    }

    #[test]
    fn user_information_is_taken_out_of_urls() {
        assert_eq!(
            url("http://u:p@169.254.170.2/v4/x"),
            "http://169.254.170.2/v4/x"
        );
        assert_eq!(url("http://host:80/a@b"), "http://host:80/a@b");
        assert_eq!(url("not a url"), "not a url");
    }
}
