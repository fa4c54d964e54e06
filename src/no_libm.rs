//! `pow`, so that the glibc build needs no `libm.so.6`.
//!
//! Loading glibc's libm costs ~0.3 MB of resident pages (its relocations and the
//! resolvers of its CPU-specific variants run at start-up, whatever is called), about a
//! tenth of the agent's peak memory. The only libm function the binary calls is `pow`
//! (the SDK's adaptive retry rate limiter takes a cube root with `powf`). Defined here,
//! the linker resolves it in the binary and drops libm from its dependencies (rustc links
//! with `--as-needed`). The implementation is the `libm` crate's port of musl's `pow`:
//! the one the static musl build already uses.

/// C's `pow`: what `f64::powf` compiles to.
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(test)]
mod tests {
    use super::pow;

    #[test]
    fn is_c_pow() {
        assert_eq!(pow(2.0, 10.0), 1024.0);
        assert!((pow(27.0, 1.0 / 3.0) - 3.0).abs() < 1e-15);
        assert_eq!(pow(0.0, 0.0), 1.0);
        assert!(pow(-8.0, 1.0 / 3.0).is_nan());
        assert_eq!(pow(f64::INFINITY, -1.0), 0.0);
    }
}
