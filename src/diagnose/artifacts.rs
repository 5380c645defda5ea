//! Azure Artifacts' refusals. Its package endpoints (npm, NuGet, PyPI,
//! Maven, Cargo, Universal) answer with their words in the HTTP reason
//! phrase (`Forbidden - User '<id>' lacks permission to complete this
//! action. You need to have 'AddPackage'. (DevOps Activity ID: <id>)`,
//! which NuGet, pip and twine print) and a body that is plain text, empty
//! or JSON with `typeKey` `FeedNeedsPermissionsException` /
//! `FeedIdNotFoundException`. This module reads the facts an answer
//! needs: the missing permission, the role that grants it, the feed.

/// The words of a reason phrase, without its leading canonical reason
/// (`Forbidden - `) and its trailing `(DevOps Activity ID: …)`, and that
/// activity id; `None` for a plain canonical phrase.
pub fn reason_words(reason: &str) -> Option<(String, Option<String>)> {
    let reason = reason.trim();
    let words = match reason.split_once(" - ") {
        Some((_, rest)) => rest.trim(),
        None if reason.contains(' ') && reason.len() > 24 => reason,
        None => return None,
    };
    let (words, activity) = match words.rfind("(DevOps Activity ID: ") {
        Some(i) => {
            let id: String = words[i + "(DevOps Activity ID: ".len()..]
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
                .collect();
            (words[..i].trim_end(), (!id.is_empty()).then_some(id))
        }
        None => (words, None),
    };
    let words: String = words.chars().take(1000).collect();
    (!words.is_empty()).then_some((words, activity))
}

/// Whether `message` says a feed permission is missing.
pub fn lacks_permission(message: &str, type_key: Option<&str>) -> bool {
    type_key == Some("FeedNeedsPermissionsException")
        || message.contains("lacks permission to complete this action")
}

/// Whether `message` says the feed does not exist (or is hidden).
pub fn feed_missing(message: &str, type_key: Option<&str>) -> bool {
    matches!(
        type_key,
        Some("FeedIdNotFoundException" | "FeedNameNotFoundException")
    ) || ((message.contains("The feed with ID '") || message.contains("The feed with name '"))
        && (message.contains("doesn't exist") || message.contains("does not exist")))
}

/// The permission a refusal names: `You need to have 'AddPackage'`.
pub fn permission(message: &str) -> Option<String> {
    quoted_after(message, "You need to have '")
        .filter(|p| !p.is_empty() && p.len() <= 64 && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The feed a refusal or the path names: `The feed with ID 'x'`, or the
/// segment after `/_packaging/`.
pub fn feed(message: &str, path: &str) -> Option<String> {
    quoted_after(message, "The feed with ID '")
        .or_else(|| quoted_after(message, "The feed with name '"))
        .or_else(|| {
            let rest = &path[path.find("/_packaging/")? + "/_packaging/".len()..];
            let seg = rest.split('/').next()?;
            Some(seg.to_string())
        })
        .map(|f| {
            f.chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect::<String>()
        })
        .filter(|f| !f.is_empty())
}

/// The least feed role that grants `permission` (Azure Artifacts' roles:
/// Feed Reader, Feed and Upstream Reader (Collaborator), Feed Publisher
/// (Contributor), Feed Owner).
pub fn role_for(permission: &str) -> &'static str {
    match permission {
        "ReadPackages" => "Feed Reader",
        "AddUpstreamPackage" => "Feed and Upstream Reader (Collaborator)",
        "AddPackage" | "UpdatePackage" | "UnlistPackage" | "DelistPackage" => {
            "Feed Publisher (Contributor)"
        }
        "DeletePackage" | "AdministerFeed" | "EditFeed" | "DeleteFeed" => "Feed Owner",
        _ => "Feed Publisher (Contributor) or Feed Owner",
    }
}

fn quoted_after(text: &str, prefix: &str) -> Option<String> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    Some(rest[..rest.find('\'')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_facts_of_artifacts_refusals() {
        let r = "Forbidden - User 'a0b1c2d3-0000-4000-8000-000000000001' lacks permission to complete this action. You need to have 'AddPackage'. (DevOps Activity ID: 8E6A5C1B-2D3F-4A5B-9C8D-7E6F5A4B3C2D)";
        let (words, activity) = reason_words(r).unwrap();
        assert!(words.starts_with("User 'a0b1"), "{words}");
        assert!(words.ends_with("'AddPackage'."), "{words}");
        assert_eq!(
            activity.as_deref(),
            Some("8E6A5C1B-2D3F-4A5B-9C8D-7E6F5A4B3C2D")
        );
        assert!(lacks_permission(&words, None));
        assert_eq!(permission(&words).as_deref(), Some("AddPackage"));
        assert_eq!(role_for("AddPackage"), "Feed Publisher (Contributor)");
        assert_eq!(role_for("ReadPackages"), "Feed Reader");
        let nf = "Not Found - The feed with ID 'tools-feed' doesn't exist. (DevOps Activity ID: 1)";
        let (words, _) = reason_words(nf).unwrap();
        assert!(feed_missing(&words, None));
        assert_eq!(feed(&words, "/x").as_deref(), Some("tools-feed"));
        assert_eq!(
            feed("", "/contoso/proj/_packaging/shared/npm/registry/x").as_deref(),
            Some("shared")
        );
        for canonical in ["Forbidden", "Not Found", "OK", ""] {
            assert!(reason_words(canonical).is_none(), "{canonical}");
        }
        // A hostile permission name is not taken.
        assert!(permission("You need to have '<script>'").is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_reason_or_message_is_read_safely(s in "\\PC{0,300}") {
            let _ = reason_words(&s);
            let _ = permission(&s);
            let _ = feed(&s, &s);
        }
    }
}
