module text-stats-go

go 1.24
