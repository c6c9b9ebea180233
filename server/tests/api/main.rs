//! The server's integration tests: one binary (one link, one build), a module per area, against
//! real servers on free loopback ports. `helpers` holds the servers and the requests the tests
//! make.

mod helpers;

mod access_tokens;
mod assets;
mod auth;
mod chat;
mod cluster;
mod cors;
mod counter_stream;
mod edge;
mod errors;
mod hostile;
mod lean;
mod load;
mod mercure1;
mod operations;
mod pages;
mod process;
mod publish;
mod startup;
mod subscribe;
mod subscriptions;
mod tls;
