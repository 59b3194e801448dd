//! The HTTPS clients' one certificate verifier. reqwest builds the platform's verifier for
//! every client, and that reads and parses every root certificate of the system's bundle (about
//! 19 M instructions, several milliseconds, at each client). The service builds three or four
//! clients at start (LangSmith, Slack, Teams, event webhooks), and every command that starts
//! the service paid that each time. Here the verifier is made once and shared; the rest of the
//! configuration is what reqwest makes with no TLS option set (every TLS version of rustls, the
//! platform's roots, SNI, `h2` then `http/1.1` offered by ALPN, a session cache per client).

use std::sync::{Arc, LazyLock};

/// A client builder using the shared verifier (or reqwest's own configuration if it could not
/// be made: reqwest then reports why when the client is built).
///
/// The TLS configuration is made here, so reqwest's own TLS options on the builder
/// (`min_tls_version`, `add_root_certificate`, `danger_accept_invalid_certs`, `http1_only`'s
/// ALPN, …) would be ignored: a client that needs one must not be built from this.
pub(crate) fn builder() -> reqwest::ClientBuilder {
    static TLS: LazyLock<Option<rustls::ClientConfig>> = LazyLock::new(tls_config);
    let builder = reqwest::Client::builder();
    match &*TLS {
        Some(config) => {
            let mut config = config.clone();
            // Its own session cache, as a client of reqwest's own making has (a clone shares it).
            config.resumption = rustls::client::Resumption::default();
            builder.tls_backend_preconfigured(config)
        }
        None => builder,
    }
}

/// What reqwest's builder makes with no TLS option set, its verifier made once. The crypto
/// provider is the one installed at start (`main`: ring's), as reqwest takes it.
fn tls_config() -> Option<rustls::ClientConfig> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone()).ok()?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// reqwest takes the configuration as its own (a `rustls` of another version would be an
    /// unknown backend, and building the client would fail), and it is reqwest's: HTTP/2 then
    /// HTTP/1.1 offered, SNI on, every version.
    #[test]
    fn clients_share_a_configuration_reqwest_takes() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = tls_config().expect("the platform's verifier");
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(config.enable_sni);
        builder().build().expect("reqwest takes the shared configuration");
        builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a second client from it");
    }
}
