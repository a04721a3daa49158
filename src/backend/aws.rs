//! Real backend: filled in by the backend work.
