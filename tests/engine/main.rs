//! End-to-end tests of the engine: real HTTP, real stores (SQLite and Postgres), real
//! child processes. One test binary for the whole workspace's end-to-end suite.

mod support;

mod attempt_output;
mod cli;
mod cloudevents;
mod crash;
mod cron;
mod delivery;
mod explain;
mod faults;
mod http_source;
mod listener;
mod retention;
mod s3;
mod secrets;
