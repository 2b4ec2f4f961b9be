//! Stage 1 of configuration: the TOML file as serde sees it.
//!
//! Every struct denies unknown fields, so a typo (`[backend] urll = …`) is an error that names the
//! key instead of a silently ignored setting. Values that need checking later keep their byte span
//! (`toml::Spanned`) so that stage 2 (`config::mod`) can point at `file:line:column`.

use serde::Deserialize;
use toml::Spanned;

pub type Text = Spanned<String>;
pub type TextList = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server_names: Option<TextList>,
    #[serde(default)]
    pub listen: RawListen,
    pub backend: Option<Spanned<RawBackend>>,
    #[serde(default)]
    pub trust: RawTrust,
    #[serde(default)]
    pub https: RawHttps,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub access: Vec<Spanned<RawAccess>>,
    #[serde(default)]
    pub acme: RawAcme,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub shutdown: RawShutdown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub http: Option<TextList>,
    pub https: Option<TextList>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub url: Option<Text>,
    pub https_url: Option<Text>,
    pub tls_verify: Option<bool>,
    pub connect_timeout: Option<Text>,
    pub response_timeout: Option<Text>,
    pub idle_timeout: Option<Text>,
    pub max_idle_connections: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    pub cloudflare: Option<bool>,
    pub extra: Option<TextList>,
    pub ranges_file: Option<Text>,
    pub only_trusted_peers: Option<bool>,
    pub require_client_cert: Option<bool>,
    pub edge_header: Option<Text>,
    pub edge_secret_file: Option<Text>,
    pub edge_secret_overlap: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttps {
    pub redirect: Option<bool>,
    pub hsts: Option<Text>,
    pub rewrite_location: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub default: Option<Text>,
    pub reload_interval: Option<Text>,
    pub expiry_warn_days: Option<Spanned<i64>>,
    pub handshake_timeout: Option<Text>,
    pub client_ca: Option<Text>,
    pub client_auth: Option<Text>,
    #[serde(default)]
    pub certs: Vec<Spanned<RawCert>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCert {
    // Required keys are optional here, so a block missing one is reported by the validator with
    // the block's other problems, and the blocks after it keep their indexes.
    pub cert: Option<Text>,
    pub key: Option<Text>,
    pub hosts: Option<TextList>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<Text>,
    pub access: Option<Text>,
    pub access_file: Option<Text>,
    pub redact_query: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Text>,
    pub allow_remote: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<Spanned<i64>>,
    pub max_headers: Option<Spanned<i64>>,
    pub http2_max_streams: Option<Spanned<i64>>,
    #[serde(default)]
    pub body: Vec<Spanned<RawBodyLimit>>,
    pub header_read_timeout: Option<Text>,
    pub max_connections: Option<Spanned<i64>>,
    pub allow_underscores_in_headers: Option<bool>,
    pub request_buffer: Option<Text>,
    pub request_buffer_total: Option<Text>,
    pub body_read_timeout: Option<Text>,
    pub upgrade_protocols: Option<TextList>,
    #[serde(default)]
    pub rate: Vec<Spanned<RawRate>>,
    pub rate_table_size: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub grace: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    pub prefix: Option<Text>,
    pub host: Option<Text>,
    pub htpasswd: Option<Text>,
    pub realm: Option<Text>,
    pub allow: Option<TextList>,
    pub deny: Option<TextList>,
    pub pass_authorization: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub webroot: Option<Text>,
    pub backend: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    pub prefix: Option<Text>,
    pub per_ip: Option<Text>,
    pub burst: Option<Spanned<i64>>,
    pub methods: Option<TextList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBodyLimit {
    pub prefix: Option<Text>,
    pub max: Option<Text>,
}
