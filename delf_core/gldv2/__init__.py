"""Knowledge of the Google Landmarks Dataset v2: layout, URLs, CSV schemas, mini dataset."""
