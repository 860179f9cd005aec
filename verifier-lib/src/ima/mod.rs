//! Linux IMA runtime measurement lists.
