pub mod proton;
