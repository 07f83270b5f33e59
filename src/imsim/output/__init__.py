"""What people read: figures, HTML reports and briefs."""
