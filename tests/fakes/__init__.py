"""Local stand-ins for hosted services, speaking their documented wire formats."""
