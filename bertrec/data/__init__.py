"""The data layer: raw logs -> canonical events -> cleaned events -> sequences -> splits."""
