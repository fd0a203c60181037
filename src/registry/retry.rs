//! Retry policy: jittered exponential backoff honouring Retry-After (placeholder: being written).
