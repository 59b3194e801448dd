//! Console users from `FEEDBACK_DISPATCH_CONSOLE_USERS` (`name:<argon2id PHC hash>:admin|read`,
//! separated by whitespace: a PHC hash holds `$`, `,` and `=`, never a space or a colon), and
//! the hashes `console hash-password` prints.

use crate::settings::{ConsoleRole, ConsoleUser};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The variable the users come from.
pub const USERS_VAR: &str = "FEEDBACK_DISPATCH_CONSOLE_USERS";

/// Parses the users; every problem is one message naming the entry (by position and name,
/// never by its hash).
pub fn parse_users(text: &str) -> Result<Vec<ConsoleUser>, Vec<String>> {
    let mut users: Vec<ConsoleUser> = Vec::new();
    let mut problems = Vec::new();
    for (n, entry) in text.split_whitespace().enumerate() {
        let at = n + 1;
        let Some((name, rest)) = entry.split_once(':') else {
            problems.push(format!("entry {at} is not name:hash:role"));
            continue;
        };
        let Some((hash, role)) = rest.rsplit_once(':') else {
            problems.push(format!("entry {at} ({}) is not name:hash:role", shown(name)));
            continue;
        };
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
        {
            problems.push(format!(
                "entry {at}: the name {} is not 1 to 64 letters, digits, '.', '_', '@' or '-'",
                shown(name)
            ));
            continue;
        }
        let role = match role {
            "admin" => ConsoleRole::Admin,
            "read" => ConsoleRole::Read,
            other => {
                problems.push(format!(
                    "entry {at} ({name}): role {} is not admin or read",
                    shown(other)
                ));
                continue;
            }
        };
        match PasswordHash::new(hash) {
            Ok(h) if h.algorithm.as_str() == "argon2id" => {}
            Ok(h) => {
                problems.push(format!(
                    "entry {at} ({name}): the hash is {}, not argon2id (make one with `feedback-dispatch console hash-password`)",
                    h.algorithm
                ));
                continue;
            }
            Err(_) => {
                problems.push(format!(
                    "entry {at} ({name}): the hash is not a PHC string (expected $argon2id$v=19$m=…; make one with `feedback-dispatch console hash-password`)"
                ));
                continue;
            }
        }
        if users.iter().any(|u| u.name == name) {
            problems.push(format!("entry {at} ({name}): the name is listed twice"));
            continue;
        }
        users.push(ConsoleUser {
            name: name.to_string(),
            hash: hash.to_string(),
            role,
        });
    }
    if problems.is_empty() { Ok(users) } else { Err(problems) }
}

/// A name as quoted in a message: escaped, and cut short.
fn shown(s: &str) -> String {
    format!("{:?}", s.chars().take(40).collect::<String>())
}

/// The argon2id PHC hash of `password`, with OWASP's parameters (19 MiB, 2 passes, 1 lane:
/// the library's defaults) and a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_parses_as_a_user() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horse "));
        assert!(!verify_password("not a hash", "x"));
        let users = parse_users(&format!("ana:{hash}:admin\n  bo:{hash}:read ")).unwrap();
        assert_eq!(
            users.iter().map(|u| (u.name.as_str(), u.role)).collect::<Vec<_>>(),
            [("ana", ConsoleRole::Admin), ("bo", ConsoleRole::Read)]
        );
    }

    #[test]
    fn bad_entries_are_named_by_position_and_never_quote_the_hash() {
        let hash = hash_password("pw").unwrap();
        let text = format!(
            "ana {hash} bo:{hash}:owner cy:$2b$12$abcdefghijklmnopqrstuv:read dee:{hash}:read dee:{hash}:admin"
        );
        let problems = parse_users(&text).unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].starts_with("entry 1 is not name:hash:role"));
        assert!(problems[1].starts_with("entry 2 is not name:hash:role"), "{problems:?}");
        assert!(problems[2].contains("role \"owner\" is not admin or read"));
        assert!(
            problems[3].contains("cy") && problems[3].contains("not a PHC string"),
            "{problems:?}"
        );
        assert!(problems[4].contains("listed twice"));
        assert!(problems.iter().all(|p| !p.contains(&hash[20..])), "a hash was quoted");
    }
}
