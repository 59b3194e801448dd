//! The embedded service's API key: `LANGSMITH_API_KEY`, or one generated at the first start and
//! kept beside the SQLite database, or in a PostgreSQL database every replica shares.

use crate::domain::StoreUrl;
use crate::settings::{LangSmithEndpoint, Settings};
use crate::store::Store;
use secrecy::{ExposeSecret, SecretString};

/// The key the embedded service takes and this process mints with: `LANGSMITH_API_KEY` when
/// set, else the generated one (kept in a shared store, so every replica takes the same key,
/// or beside a SQLite file: [`load_or_create_key`]); `None` with a remote LangSmith.
///
/// `store` is the opened store; without one (a command that does not open it), a PostgreSQL
/// store is opened to read the key.
pub(crate) async fn api_key(settings: &Settings, store: Option<&dyn Store>) -> anyhow::Result<Option<SecretString>> {
    match (&settings.langsmith.endpoint, &settings.langsmith.api_key) {
        (LangSmithEndpoint::Remote(_), _) => Ok(None),
        (LangSmithEndpoint::Embedded, Some(key)) => Ok(Some(key.clone())),
        (LangSmithEndpoint::Embedded, None) => {
            if !settings.store.url.is_postgres() {
                return Ok(Some(load_or_create_key(&settings.store.url)?));
            }
            let opened;
            let store = match store {
                Some(store) => store,
                None => {
                    opened = crate::store::open(&settings.store.url).await?;
                    &*opened
                }
            };
            shared_key(store).await.map(Some)
        }
    }
}

/// The generated key a shared store keeps: the stored one, or one generated and stored now.
pub(crate) async fn shared_key(store: &dyn Store) -> anyhow::Result<SecretString> {
    let candidate = generate_key();
    match store.shared_secret(SHARED_KEY_NAME, candidate.expose_secret()).await? {
        Some(shared) => Ok(SecretString::from(shared)),
        None => anyhow::bail!("the store keeps no shared key"),
    }
}

/// The key's name in a shared store.
const SHARED_KEY_NAME: &str = "embedded-api-key";

/// The file, beside the database, that keeps the generated key.
const KEY_FILE: &str = "embedded-api-key";

/// The embedded service's key when `LANGSMITH_API_KEY` is not set: read from
/// `embedded-api-key` in the database's folder, or generated (244 random bits from the
/// operating system) and written there, readable by its owner only, at the first start. A file
/// readable by others is narrowed to its owner. An in-memory store gets a key for the life of
/// the process.
pub(super) fn load_or_create_key(store_url: &StoreUrl) -> std::io::Result<SecretString> {
    let Some(path) = key_path(store_url) else {
        return Ok(generate_key());
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    loop {
        match read_key(&path)? {
            Some(key) => return Ok(key),
            None => {
                let key = generate_key();
                // `create_new`: of two processes starting at once, one writes and the other
                // reads what it wrote.
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = match options.open(&path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                };
                use std::io::Write;
                file.write_all(key.expose_secret().as_bytes())?;
                file.write_all(b"\n")?;
                file.sync_all()?;
                tracing::info!(path = %path.display(), "generated the embedded LangSmith service's API key (pass it as x-api-key)");
                return Ok(key);
            }
        }
    }
}

/// The key kept at `path`, if there is one; its file is narrowed to its owner.
fn read_key(path: &std::path::Path) -> std::io::Result<Option<SecretString>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if text.trim().is_empty() {
        // A writer that has not written yet, or an empty file left behind: wait a moment, then
        // take it over.
        std::thread::sleep(std::time::Duration::from_millis(50));
        if std::fs::read_to_string(path)?.trim().is_empty() {
            std::fs::remove_file(path)?;
        }
        return Ok(None);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            tracing::warn!(path = %path.display(), "the embedded service's key file was readable by others; it is now its owner's only");
        }
    }
    Ok(Some(SecretString::from(text.trim().to_string())))
}

/// Where the generated key lives for a store URL (`sqlite://data/x.db` → `data/embedded-api-key`).
pub(super) fn key_path(store_url: &StoreUrl) -> Option<std::path::PathBuf> {
    let path = store_url.sqlite_path()?;
    let dir = path.parent().unwrap_or(std::path::Path::new(""));
    Some(dir.join(KEY_FILE))
}

/// Two version-4 UUIDs, which take their 122 random bits each from the operating system.
fn generate_key() -> SecretString {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    SecretString::from(format!("fdk_{}{}", a.simple(), b.simple()))
}
