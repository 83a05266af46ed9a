# frozen_string_literal: true

require 'json'

# sig/divvy.rbs against the loaded code: every public method and constant
# divvy defines (in Ruby or in the extension) must have a signature. The
# reverse is not checked: a signature may come before its method. The
# comparison runs in a process of its own (see the script).
RSpec.describe 'sig/divvy.rbs' do
  before(:all) do
    script = File.join(__dir__, 'support', 'scripts', 'signature_gaps.rb')
    stdout, stderr, status = Open3.capture3({ 'RUBYLIB' => File.join(ROOT, 'lib') }, 'ruby', script,
                                            File.join(ROOT, 'sig'))
    raise "#{script} failed: #{stderr}" unless status.success?

    @gaps = JSON.parse(stdout)
  end

  it 'covers the classes and modules the README documents' do
    expected = %w[Divvy Divvy::Parallelizable Divvy::Master Divvy::Master::BootFailure Divvy::Master::Shutdown
                  Divvy::Worker Divvy::Error Divvy::TaskError Divvy::CLI]
    expect(@gaps['namespaces']).to include(*expected)
  end

  it 'declares every class and module under Divvy' do
    expect(@gaps['classes']).to be_empty
  end

  it 'declares every public constant under Divvy' do
    expect(@gaps['constants']).to be_empty
  end

  it 'has a signature for every public instance method' do
    expect(@gaps['instance_methods']).to be_empty
  end

  it 'has a signature for every public singleton method' do
    expect(@gaps['singleton_methods']).to be_empty
  end
end
