# frozen_string_literal: true

# The start-up workload for the divvy command: 10 empty items, run as
# `divvy -n 2 bench/startup/task.rb` (see bench/startup.rb).
class StartupTask
  include Divvy::Parallelizable

  def dispatch
    10.times { |i| yield i }
  end

  def perform(_item); end
end
