//! A webhook URL carries its token in the path or the query (Slack's
//! `/services/T…/B…/SECRET`, Teams' `…?sig=…`), so it is never shown: only
//! its scheme and host are, as in `https://hooks.slack.com`.

/// Why `url` cannot be a webhook; the reason never repeats the URL.
pub fn check(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("not a URL: write it as http://HOST/PATH or https://HOST/PATH".into());
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(format!(
            "the scheme {:?} is not http or https",
            crate::text::one_line(scheme)
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL holds white space or control characters".into());
    }
    let host = host_of(rest);
    if host.is_empty() {
        return Err("the URL names no host".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
    {
        return Err("the URL's host is not a host name or address".into());
    }
    Ok(())
}

/// What may be shown of `url`: its scheme and host (with the port), never
/// its user info, path or query.
pub fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!(
            "{}://{}",
            crate::text::one_line(&scheme.to_ascii_lowercase()),
            crate::text::one_line(host_of(rest))
        ),
        None => "(a webhook that is not a URL)".into(),
    }
}

/// `text` (an error of the HTTP client) with the URL and its secret parts
/// replaced by what may be shown.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &shown(url));
    if let Some((_, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let secret = &rest[authority_end..];
        if secret.len() > 1 {
            out = out.replace(secret, "/…");
        }
        if let Some((userinfo, _)) = rest[..authority_end].rsplit_once('@') {
            out = out.replace(userinfo, "…");
        }
    }
    crate::text::one_line(&out)
}

/// The host (and port) of the part after `scheme://`, without user info.
fn host_of(rest: &str) -> &str {
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLACK: &str = "https://hooks.slack.com/services/T000/B000/SeCrEtToKeN";

    #[test]
    fn only_scheme_and_host_are_shown() {
        assert_eq!(shown(SLACK), "https://hooks.slack.com");
        assert_eq!(
            shown("http://user:pw@127.0.0.1:9000/h?sig=abc"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            shown("HTTPS://x.webhook.office.com?sig=zz"),
            "https://x.webhook.office.com"
        );
    }

    #[test]
    fn check_accepts_http_urls_and_never_repeats_them() {
        assert!(check(SLACK).is_ok());
        assert!(check("http://localhost:9000/hook").is_ok());
        for bad in [
            "ftp://h/SeCrEtToKeN",
            "hooks.slack.com/SeCrEtToKeN",
            "https:///SeCrEtToKeN",
            "https://h/a b SeCrEtToKeN",
        ] {
            let why = check(bad).unwrap_err();
            assert!(!why.contains("SeCrEtToKeN"), "{why}");
        }
    }

    #[test]
    fn scrub_removes_the_token_from_client_errors() {
        let e = format!("bad uri: {SLACK}: and /services/T000/B000/SeCrEtToKeN again");
        let s = scrub(&e, SLACK);
        assert!(!s.contains("SeCrEtToKeN"), "{s}");
        assert!(s.contains("https://hooks.slack.com"), "{s}");
    }
}
