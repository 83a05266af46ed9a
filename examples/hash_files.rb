# frozen_string_literal: true

require 'divvy'
require 'digest'
require 'find'

# Hashes every file under a directory in parallel and prints a sorted
# manifest from the master, which gathers the results:
#
#   divvy -n 4 examples/hash_files.rb DIRECTORY
#
# Each worker returns [path, size, digest] from #perform; the master's
# #completed hook collects them, and the master prints the manifest when it
# exits, after the last file is in (workers leave with exit!, so they never
# run at_exit handlers).
class HashFiles
  include Divvy::Parallelizable

  def initialize
    @root = ARGV[0] || '.'
    @manifest = []
    at_exit { report }
  end

  # Master: yields the path of every regular file under the root.
  def dispatch
    Find.find(@root) { |path| yield path if File.file?(path) }
  end

  # Worker: hashes one file; its return value travels back to the master.
  def perform(path)
    [path, File.size(path), Digest::SHA256.file(path).hexdigest]
  end

  # Master: receives each worker's result.
  def completed(result, _path)
    @manifest << result
  end

  # Master: prints the manifest, sorted by path.
  def report
    @manifest.sort.each { |path, size, digest| puts "#{digest}  #{size.to_s.rjust(10)}  #{path}" }
  end
end
