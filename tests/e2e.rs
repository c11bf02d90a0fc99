//! End-to-end tests: the built `dcm` binary on temporary directories, as a user runs it.

mod e2e {
    pub mod bad_input;
    pub mod examples;
    pub mod harness;
    pub mod hostile_inputs;
    pub mod hostile_plans;
    pub mod kubernetes;
    pub mod lifecycle;
    pub mod logical_clouds;
    pub mod network;
    pub mod ownership;
    pub mod reference_shapes;
    pub mod review;
    pub mod safety;
    pub mod scale;
    pub mod signals;
    pub mod sops;
    pub mod state_backends;
    pub mod terminal;
    pub mod verbs;
    pub mod waits;
}
