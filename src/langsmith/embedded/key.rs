//! The embedded service's API key: `LANGSMITH_API_KEY`, or one generated at the first start and
//! kept beside the database.

use crate::settings::{LangSmithEndpoint, Settings};
use secrecy::{ExposeSecret, SecretString};

/// The key the embedded service takes and this process mints with: `LANGSMITH_API_KEY` when
/// set, else the generated one ([`load_or_create_key`]); `None` with a remote LangSmith.
pub fn api_key(settings: &Settings) -> std::io::Result<Option<SecretString>> {
    match (&settings.langsmith.endpoint, &settings.langsmith.api_key) {
        (LangSmithEndpoint::Remote(_), _) => Ok(None),
        (LangSmithEndpoint::Embedded, Some(key)) => Ok(Some(key.clone())),
        (LangSmithEndpoint::Embedded, None) => load_or_create_key(&settings.store.url).map(Some),
    }
}

/// The file, beside the database, that keeps the generated key.
const KEY_FILE: &str = "embedded-api-key";

/// The embedded service's key when `LANGSMITH_API_KEY` is not set: read from
/// `embedded-api-key` in the database's folder, or generated (32 random bytes, hex) and written
/// there, readable by its owner only, at the first start. An in-memory store gets a key for the
/// life of the process.
pub fn load_or_create_key(store_url: &str) -> std::io::Result<SecretString> {
    let Some(path) = key_path(store_url) else {
        return Ok(generate_key());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(SecretString::from(text.trim().to_string())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = generate_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    let mut file = options.open(&path)?;
    file.write_all(key.expose_secret().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "generated the embedded LangSmith service's API key (pass it as x-api-key)");
    Ok(key)
}

/// Where the generated key lives for a store URL (`sqlite://data/x.db` → `data/embedded-api-key`).
pub fn key_path(store_url: &str) -> Option<std::path::PathBuf> {
    if store_url.contains(":memory:") {
        return None;
    }
    let path = store_url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    let dir = std::path::Path::new(path).parent().unwrap_or(std::path::Path::new(""));
    Some(dir.join(KEY_FILE))
}

fn generate_key() -> SecretString {
    let bytes: [u8; 32] = std::array::from_fn(|_| fastrand::u8(..));
    SecretString::from(format!("fdk_{}", hex::encode(bytes)))
}
