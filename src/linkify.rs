//! HTML escaping and Tornado-style `linkify`: the only code that turns message text into
//! markup. Everything is escaped; only `http://`, `https://` and `www.` runs become links,
//! so no `javascript:` (or any other scheme) can reach an `href`.

/// Escapes `& < > " '` for HTML text and quoted attribute values.
pub fn escape_html(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Escapes `text` and turns URL runs into `<a href=".." rel="nofollow noopener">` links.
pub fn linkify(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut plain_start = 0;
    let mut i = 0;
    while i < text.len() {
        if let Some(len) = url_at(text, i) {
            escape_html(&text[plain_start..i], &mut out);
            let url = &text[i..i + len];
            let href_prefix = if starts_with_ignore_case(url, "www.") {
                "http://"
            } else {
                ""
            };
            out.push_str("<a href=\"");
            out.push_str(href_prefix);
            escape_html(url, &mut out);
            out.push_str("\" rel=\"nofollow noopener\">");
            escape_html(url, &mut out);
            out.push_str("</a>");
            i += len;
            plain_start = i;
        } else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    escape_html(&text[plain_start..], &mut out);
    out
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// The length in bytes of a linkable URL starting at `start`, if there is one.
fn url_at(text: &str, start: usize) -> Option<usize> {
    // A link starts at a word boundary, like Tornado's `\b`.
    if let Some(prev) = text[..start].chars().next_back() {
        if prev.is_alphanumeric() || prev == '_' {
            return None;
        }
    }
    let rest = &text[start..];
    let prefix_len = ["http://", "https://", "www."]
        .iter()
        .find(|p| starts_with_ignore_case(rest, p))?
        .len();
    // The run goes to the next white space or character that cannot be in a bare URL.
    let run_len = rest
        .char_indices()
        .find(|&(_, c)| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '`'))
        .map_or(rest.len(), |(i, _)| i);
    let mut run = &rest[..run_len];
    // Trailing punctuation belongs to the sentence, and a closing bracket only to the URL
    // when it closes one opened inside it: "(see http://a.example/x)" links without ")".
    while let Some(last) = run.chars().next_back() {
        let trim = match last {
            '.' | ',' | ':' | ';' | '!' | '?' | '*' | '~' => true,
            ')' => run.matches('(').count() < run.matches(')').count(),
            ']' => run.matches('[').count() < run.matches(']').count(),
            '}' => run.matches('{').count() < run.matches('}').count(),
            _ => false,
        };
        if !trim {
            break;
        }
        run = &run[..run.len() - last.len_utf8()];
    }
    // Something must follow the scheme or `www.` that can name a host.
    let host = &run[prefix_len.min(run.len())..];
    host.chars().next().filter(|c| c.is_alphanumeric())?;
    Some(run.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "rel=\"nofollow noopener\"";

    #[test]
    fn escapes_markup() {
        assert_eq!(
            linkify("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn links_http_and_https() {
        assert_eq!(
            linkify("see https://example.com/a?b=1&c=2 now"),
            format!(
                "see <a href=\"https://example.com/a?b=1&amp;c=2\" {A}>https://example.com/a?b=1&amp;c=2</a> now"
            )
        );
        assert_eq!(
            linkify("HTTP://X.ORG"),
            format!("<a href=\"HTTP://X.ORG\" {A}>HTTP://X.ORG</a>")
        );
    }

    #[test]
    fn links_www_with_http_href() {
        assert_eq!(
            linkify("see www.example.com."),
            format!("see <a href=\"http://www.example.com\" {A}>www.example.com</a>.")
        );
    }

    #[test]
    fn leaves_other_schemes_as_text() {
        for text in [
            "javascript:alert(1)",
            "data:text/html,x",
            "ftp://x.org",
            "mailto:a@b",
        ] {
            assert!(!linkify(text).contains("<a"), "{text}");
        }
    }

    #[test]
    fn does_not_link_inside_words_or_bare_schemes() {
        assert!(!linkify("xhttp://a.org").contains("<a"));
        assert!(!linkify("http:// nothing").contains("<a"));
        assert!(!linkify("www.").contains("<a"));
    }

    #[test]
    fn balanced_brackets_stay_and_closing_ones_are_trimmed() {
        assert_eq!(
            linkify("(http://a.org/x)"),
            format!("(<a href=\"http://a.org/x\" {A}>http://a.org/x</a>)")
        );
        assert_eq!(
            linkify("http://a.org/wiki/X_(y)"),
            format!("<a href=\"http://a.org/wiki/X_(y)\" {A}>http://a.org/wiki/X_(y)</a>")
        );
    }

    #[test]
    fn quotes_cannot_break_out_of_the_href() {
        let html = linkify("http://a.org/\"onmouseover=alert(1)");
        assert!(html.contains("<a href=\"http://a.org/\" "), "{html}");
        assert!(html.contains("&quot;onmouseover"), "{html}");
    }

    #[test]
    fn keeps_non_ascii_text() {
        assert_eq!(
            linkify("héllo wörld https://ü.example"),
            format!("héllo wörld <a href=\"https://ü.example\" {A}>https://ü.example</a>")
        );
    }
}
