//! URL routing for `ferrule.routing`, on matchit (placeholder: issue 6).
