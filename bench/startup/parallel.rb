# frozen_string_literal: true

# The start-up workload with the parallel gem: 10 empty items on 2
# processes (see bench/startup.rb).
require 'parallel'
Parallel.map(0...10, in_processes: 2) { |item| item }
