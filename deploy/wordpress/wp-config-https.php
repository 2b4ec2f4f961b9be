<?php
/*
 * origin-gate → WordPress: map X-Forwarded-Proto to $_SERVER['HTTPS'].
 *
 * Put these lines in wp-config.php ABOVE the line "That's all, stop editing!"
 * (before wp-settings.php is loaded).
 *
 * Why: WordPress's is_ssl() reads only $_SERVER['HTTPS'] (and SERVER_PORT 443); it never looks
 * at X-Forwarded-Proto. Behind Cloudflare "Flexible" the hop to the origin is plain http, so
 * without this mapping WordPress thinks every visitor uses http and FORCE_SSL_ADMIN / an https
 * site address redirect forever (ERR_TOO_MANY_REDIRECTS). origin-gate sets X-Forwarded-Proto to
 * the scheme the *visitor* used, and drops any X-Forwarded-Proto that did not come from
 * Cloudflare (or your other trusted ranges).
 *
 * WARNING: this trusts the header from whoever connects to the web server. The web server must
 * therefore listen on loopback only (127.0.0.1:8080, the backend.url of origin-gate), so that
 * origin-gate is the only client that can reach it. Never use this on a web server that is
 * reachable from the internet directly.
 */
if (isset($_SERVER['HTTP_X_FORWARDED_PROTO']) && $_SERVER['HTTP_X_FORWARDED_PROTO'] === 'https') {
    $_SERVER['HTTPS'] = 'on';
}
// Optional: the real visitor address for plugins that read REMOTE_ADDR (comments, login limits).
if (isset($_SERVER['HTTP_X_REAL_IP'])) {
    $_SERVER['REMOTE_ADDR'] = $_SERVER['HTTP_X_REAL_IP'];
}
