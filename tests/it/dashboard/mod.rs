//! The dashboard on the admin listener: the pages in a real Chromium (`pages`), search at
//! 100,000 domains (`scale`), the admin token (`token`).

mod pages;
mod scale;
mod token;
